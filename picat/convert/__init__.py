"""``picat convert``: move backbone weights between picat checkpoints and outside codes' layouts.

* :mod:`picat.convert.layout`: the tensor-by-tensor correspondence and its checks;
* :mod:`picat.convert.dgcnn`: the official DGCNN's and CrossPoint's layouts;
* :mod:`picat.convert.pointnext`: OpenPoints' PointNeXt layout;
* :mod:`picat.convert.formats`: the formats by name;
* :mod:`picat.convert.files`: importing and exporting checkpoint files
  (:func:`~picat.convert.files.import_checkpoint`, :func:`~picat.convert.files.export_checkpoint`);
* :mod:`picat.convert.cli`: the ``convert`` subcommand.

Nothing is imported here, so that ``picat --help`` (which adds the subcommand) does not import
torch. See docs/convert.md.
"""
