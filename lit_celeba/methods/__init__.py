"""Methods newer than the recipe that the core's model calls only when a setting (off by default)
chooses them: training and evaluating by group (docs/groups.md), positive weights, and decision
thresholds chosen on the validation set."""
