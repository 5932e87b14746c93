"""What a model folder reports: the codec's report.json / results.csv and the HTML report."""
