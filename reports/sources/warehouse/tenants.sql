-- Every tenant, including one with no activity yet, and 'all' first: the filter on every page.
select 'all' as tenant, 'All tenants' as tenant_label, 0 as sort_order
union all
select tenant_id, tenant_name || ' (' || tenant_id || ')', 1 from marts.dim_tenants
