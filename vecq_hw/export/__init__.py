"""Export: PyTorch -> integer model (:mod:`.torch_export`: ``export``, ``export_model``).

The integer model's file format lives in :mod:`vecq_hw.ir.io` (``save_model``, ``load_model``)
and its weight memory image in :mod:`vecq_hw.ir.packing`. Import-light on purpose: nothing
here pulls in torch until ``torch_export`` is used.
"""
