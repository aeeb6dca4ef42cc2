"""drf-spectacular extensions (loaded from ``JobsConfig.ready``)."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class CompanyJWTScheme(SimpleJWTScheme):
    target_class = "jobs.auth.CompanyJWTAuthentication"
    name = "jwtAuth"
