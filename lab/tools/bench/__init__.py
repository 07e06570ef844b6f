"""``ibcm-lab bench``: :func:`lab.tools.bench.bench.run_bench` and the modules it uses (its
docstring lists them); ``bench/load_mp.py`` runs :mod:`lab.tools.bench.load`."""
