"""What the tests share: scene builders and real-data finders (scenes.py), the shared model
test (model_tester.py)."""
