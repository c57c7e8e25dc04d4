"""frugal-sdk: route requests through Frugal experiments from a backend service.

    from frugal_sdk import Client
    client = Client("http://frugal:8000", api_key)
    answer = client.predict("ranker-v2", user_id, features, fallback=local_model)
    client.record_outcome(answer.request_id, clicked)
"""

from frugal_sdk.client import Client
from frugal_sdk.errors import ApiError, DeadlineExceeded, FrugalError, NotReady, ServiceUnavailable, UnknownExperiment
from frugal_sdk.transport import Response, Transport, TransportError, Urllib3Transport
from frugal_sdk.types import Assignment, Prediction

__all__ = ["Client", "Prediction", "Assignment", "FrugalError", "DeadlineExceeded", "ServiceUnavailable", "ApiError",
           "NotReady", "UnknownExperiment", "Transport", "Response", "TransportError", "Urllib3Transport"]
__version__ = "0.1.0"
