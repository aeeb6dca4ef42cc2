"""factory_boy factories; jobs are made through the services so they carry their events."""

from typing import Any

import factory
from django.contrib.auth import get_user_model

from jobs import services
from jobs.models import Company, CompanyMember, Job, JobStatus
from tests.relay import run_relay


class CompanyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Company

    name = factory.Sequence(lambda n: f"Company {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", "pass-word-123")

    @factory.post_generation
    def _save(obj, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            obj.save()


class ApiClientFactory(UserFactory):
    """A user that belongs to a company (an integration's API client)."""

    @factory.post_generation
    def company(obj, create: bool, extracted: Company | None, **kwargs: Any) -> None:
        if create:
            CompanyMember.objects.create(user=obj, company=extracted or CompanyFactory())


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    company = factory.SubFactory(CompanyFactory)
    type = "export"

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Job:
        return services.job_create(**kwargs)


def job_in_status(status: JobStatus | str, **kwargs: Any) -> Job:
    """Make a job, drive it through the services into ``status`` and relay its events."""
    job = JobFactory(**kwargs)
    if status == JobStatus.PROCESSING:
        services.job_start(job_id=job.pk)
    elif status == JobStatus.COMPLETED:
        services.job_complete(job_id=job.pk)
    elif status == JobStatus.COMPLETED_WITH_ERRORS:
        services.job_complete_with_errors(job_id=job.pk)
    elif status == JobStatus.FAILED:
        services.job_fail(job_id=job.pk, failure_reason="service_timeout")
    run_relay()  # what the worker does next: webhooks fanned out, the report requested
    job.refresh_from_db()
    assert job.status == status
    return job
