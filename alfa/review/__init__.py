"""Stage 7, human review in Argilla: connection (server and key), records (the dataset's settings and one
pair as a blind A/B record), push, users, pull (answers, verdicts, the reviewed dataset), agreement
(pipeline vs humans, between annotators) and server (a local Argilla for trying it out and for tests)."""
