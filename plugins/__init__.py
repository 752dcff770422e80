"""rlkit's built-in algorithms, installed as ``rlkit_plugins`` and loaded through the ``rlkit``
entry-point group exactly like a third-party plugin."""
