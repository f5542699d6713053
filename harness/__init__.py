"""Local AutoSpeech harness: dataset I/O, ingestion with a hard budget, scoring, benchmarks."""
