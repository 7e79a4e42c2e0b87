"""Multi-turn conversations between simulated roles (questioner, expert, patient or user, judge), built on
alfa.llm: the home of the turn-loop engine, simulated patients (`patients`) and questioner strategies. The
evaluation and dialogue-method issues fill it."""
