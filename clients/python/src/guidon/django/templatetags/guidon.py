"""``{% load guidon %}`` then ``{% flag_enabled "ui.new_navigation" as new_nav %}`` (or
``{% flag_variant "checkout-button-copy" as copy %}``). The context is built from the template
context's ``request`` (``django.template.context_processors.request``); without one it is empty."""

from __future__ import annotations

from typing import Any, Optional

from django import template

from guidon import django as guidon_django

register = template.Library()


@register.simple_tag(takes_context=True)
def flag_enabled(context: Any, flag: str, default: bool = False) -> bool:
    return guidon_django.flag_enabled(context.get("request"), flag, default)


@register.simple_tag(takes_context=True)
def flag_variant(context: Any, flag: str, default: Optional[str] = None) -> Optional[str]:
    return guidon_django.flag_variant(context.get("request"), flag, default)
