"""Stage 10, evaluation of trained models: reward_scorecard (reward-model accuracy per attribute). Policy
evaluations (interactive diagnosis, win rates) belong here too."""
