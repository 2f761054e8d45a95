"""A/B test analysis over the experiment marts: statistics (`stats`), each variant's daily moments
(`moments`), the metrics from the semantic layer (`metrics`), the analysis (`analysis`) and its
decision sentences (`decisions`). See ml/README.md."""
