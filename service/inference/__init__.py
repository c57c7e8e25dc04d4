"""ONNX inference: read a model's signature, build feeds, run sessions, decode outputs, cache,
profile and quantize.  Nothing here touches the database; ``service.registry`` and
``service.routing`` call it."""
