"""The Django admin, by responsibility as the models are: review (cases and transactions), versions (models),
access (API keys, lists, reason codes), rules and webhooks. Analysts work review cases here; leads also manage the
rest."""

from django.contrib import admin

from scoring.admin import access, review, rules, versions, webhooks  # noqa: F401  (each module registers its admins)

admin.site.site_header = "Fraud scoring"
admin.site.site_title = "Fraud scoring admin"
admin.site.index_title = "Review and configuration"
