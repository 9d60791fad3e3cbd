"""The rule modules, one concern each, all on one floor: none imports another (``make lint``
checks it). What they share lives one level up, in ``diagnose.shared``, ``wording``, ``index``
and ``rule``; the registry of them is ``tcphealth.diagnose.RULES``."""
