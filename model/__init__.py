"""The fusion model: training, evaluation and scoring (grows with the model issues)."""
