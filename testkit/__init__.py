"""Real peers for tests, benchmarks and the HIL harness: a private mosquitto (`broker`), a
subscribing platform that decodes what arrives (`platform`), simulated devices on their own event
loop (`sims`), a black-hole TCP proxy (`proxy`), paced RS-485 pseudo-terminal lines (`line`), an
ext4 card that can fail (`card`) and the delivery test helpers (`mqtt`).

Not product code: the agent never imports it (tests/unit/test_layering.py); the `hil` and `demo`
commands load it when they run.
"""
