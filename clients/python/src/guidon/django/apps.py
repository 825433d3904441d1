from django.apps import AppConfig


class GuidonConfig(AppConfig):
    """Add ``"guidon.django"`` to ``INSTALLED_APPS`` for the ``{% load guidon %}`` template tags."""

    name = "guidon.django"
    label = "guidon"
    verbose_name = "Guidon feature flags"
