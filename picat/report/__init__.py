"""Collating downstream results into the paper's tables and Figures 2 and 4.

* :mod:`picat.report.results` — reading result files, averaging over seeds;
* :mod:`picat.report.paper_tables` — the paper's numbers (``paper_tables.csv``), the long table
  ``results/tables.csv`` and the paper-shaped ``results/tables/table{1..5}.csv``;
* :mod:`picat.report.figure2` — trainable pre-training parameters vs ModelNet40 SVM accuracy;
* :mod:`picat.report.figure4` — local 2D-3D correspondence heatmaps of a checkpoint;
* :mod:`picat.report.figure4_table` — Figure 4's exemplar ranks as ``results/tables/figure4.csv``;
* :mod:`picat.report.correspondence` — own-cell retrieval of local centres on held-out objects
  (picat-only), and :mod:`picat.report.correspondence_table` — its ``correspondence.csv`` and long rows.
"""
