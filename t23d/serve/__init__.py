"""The web platform (``t23d serve``): the page, the REST API, live progress, uploads and access control.

It creates jobs (``t23d.jobs``) and reads their run directories; it knows nothing of fields or priors.
"""
