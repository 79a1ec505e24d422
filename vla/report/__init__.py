"""Turns experiment results into figures, markdown sections and the reproduction report.

``common`` defines :class:`~vla.report.common.Section` and :class:`~vla.report.common.ClaimRow`;
``io`` writes files atomically; ``reproduce`` wires experiments to reports (``vla reproduce``); one
module per registered experiment (``norm``, ...) renders that experiment's section.
"""
