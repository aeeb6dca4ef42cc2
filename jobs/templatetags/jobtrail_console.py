"""``{{ reason|reason_code }}``: a failure reason as the API's code, its human text the tooltip."""

from django import template

register = template.Library()


@register.filter
def reason_code(value: str) -> str:
    from jobs.admin import reason_code as render

    return render(value or "")
