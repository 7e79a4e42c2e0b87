"""Multi-turn conversations between simulated roles (questioner, expert, patient or user, judge), built on
alfa.llm: the home of the turn-loop engine, simulated patients and questioner strategies. Empty so far;
the evaluation and dialogue-method issues fill it."""
