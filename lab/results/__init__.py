"""Plain data, produced by one part of the lab and read by others (the reports, the logs):

* :mod:`lab.results.logline`: one line of a ConfigMgr log, before it is written;
* :mod:`lab.results.observations`: what a client step saw (requests, chain, revocation);
* :mod:`lab.results.records`: what the servers recorded (IIS and directory logs);
* :mod:`lab.results.verdicts`: what the judge made of a step;
* :mod:`lab.results.runs`: the results of a run, scenario by scenario;
* :mod:`lab.results.grid` and :mod:`lab.results.matrix`: the matrix's grid and its results.
"""
