"""Other ways to teach a model to ask, built on data, dialogue, train and eval: the home of STaR-GATE,
social meta-learning, CollabLLM rewards and flawed-problem data. Empty so far."""
