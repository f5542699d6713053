"""Offline meta-learning: run portfolio configurations on practice datasets into meta_db.json."""
