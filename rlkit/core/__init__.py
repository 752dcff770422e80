"""The engine, split along its seams: build (run.py set-up), experience (data kinds, backends,
rewards), update, evaluation and the loop (run.py). Plugins never import from here; they see
:mod:`rlkit.api`."""
