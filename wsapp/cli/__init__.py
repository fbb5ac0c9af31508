"""The command line clients of ``python -m wsapp``, built on :mod:`wsapp.client`.

``commands`` (arguments and dispatch), ``interactive`` (``client``), ``publish``
(``publish``), ``output`` (what is printed), ``stdin`` (reading lines under gevent).
"""
