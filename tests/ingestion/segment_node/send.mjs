// Sends events with Segment's official Node.js SDK to the collector, as an app would, and prints
// what the SDK reports: the events it delivered and any error it emitted.
// usage: node send.mjs <collector url> <write key> <prefix>; batches of 4, so the misspelt event goes alone
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, prefix] = process.argv.slice(2)
const analytics = new Analytics({ writeKey, host, flushAt: 4, flushInterval: 200, maxRetries: 2 })
const errors = []
const delivered = []
analytics.on('error', (err) => errors.push(String(err.reason ?? err.code ?? err)))
analytics.on('track', (ctx) => delivered.push(ctx.event.messageId))
analytics.on('page', (ctx) => delivered.push(ctx.event.messageId))
analytics.on('identify', (ctx) => delivered.push(ctx.event.messageId))

analytics.identify({ userId: `${prefix}-user`, traits: { plan: 'pro' }, messageId: `${prefix}-identify` })
analytics.page({ userId: `${prefix}-user`, name: 'Pricing', properties: { path: '/pricing' }, messageId: `${prefix}-page` })
analytics.track({ userId: `${prefix}-user`, event: 'Product Added', messageId: `${prefix}-added`,
  properties: { product_id: 'p1', quantity: 2, price: 9.5 } })
analytics.track({ anonymousId: `${prefix}-anon`, event: 'Order Completed', messageId: `${prefix}-order`,
  properties: { order_id: `${prefix}-o1`, total: 42.5 } })
analytics.track({ userId: `${prefix}-user`, event: 'Order Complted', messageId: `${prefix}-typo`, properties: {} })
await analytics.closeAndFlush({ timeout: 20000 })
console.log(JSON.stringify({ delivered, errors }))
