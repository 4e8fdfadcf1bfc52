"""Learning and predicting: the conditional late-arrival model.

``model`` knows nothing of HTTP, open-order files or costs. Its public surface:
validation of shipment frames, fitting the hazard model, the artifact (save/verify/load)
and prediction of ``p_late`` / ``p_late_after_extension`` for parcels still in transit.
"""
