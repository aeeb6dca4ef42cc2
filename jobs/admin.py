from django.contrib import admin

from .models import Company, CompanyMember, Job, JobEvent, PushResult


class CompanyMemberInline(admin.TabularInline):
    model = CompanyMember
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "created_at"]
    search_fields = ["name"]
    inlines = [CompanyMemberInline]


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ("sequence", "status", "failure_reason", "message", "source", "actor", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "company",
        "type",
        "status",
        "failure_reason",
        "total_records",
        "effected_records",
        "created_at",
        "last_activity_at",
    ]
    list_filter = ["status", "failure_reason", "type"]
    list_select_related = ["company"]
    search_fields = ["=code", "=id"]
    show_full_result_count = False
    inlines = [JobEventInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(PushResult)
class PushResultAdmin(admin.ModelAdmin):
    list_display = [
        "push_communication_id",
        "job",
        "status",
        "response_code",
        "data_type",
        "service_name",
        "received_at",
    ]
    list_filter = ["status", "data_type", "service_name"]
    list_select_related = ["job"]
    search_fields = ["=push_communication_id"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False
