"""``ibcm-lab ui``: the training console, a web page on 127.0.0.1 to flip the seed's switches
live and watch the client's handshake fail or succeed.

* :mod:`lab.ui.switches`: the switches, how they become a scenario (through
  :func:`lab.matrix.scenario_for`), the seed's scenes as presets, which switch fixes a failure;
* :mod:`lab.ui.topology`: zones, machines and which name answers from where;
* :mod:`lab.ui.timeline`: a finished step and a run's verdict as the page shows them;
* :mod:`lab.ui.app`: the aiohttp application (page, assets, JSON API, the event stream) and
  the command's entry point;
* ``static/``: the hand-written page (``index.html``, ``ui.css``, ``ui.js``), no build step,
  nothing loaded from elsewhere.

The console sits on top of the lab, like :mod:`lab.tools.demo` and :mod:`lab.cli`: nothing in the
lab imports it.
"""
