"""Event-driven re-screen: FHIR Subscription notifications in, the patient's Flags kept current.

``rls-screen subscribe`` registers rest-hook Subscriptions on the data contract's codes
(``subscriptions``); the FHIR server calls the endpoint of ``rls-screen serve`` (``endpoint``), which
finds the patients a notification names (``notifications``) and queues them in the state store
(``queue``: durable, debounced per patient); a few worker threads re-screen them as ``screen`` does,
with retries and backoff (``worker``). ``rls-screen batch --since`` is the reconciliation for
notifications that never came (docs/subscriptions.md).
"""
