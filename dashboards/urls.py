from __future__ import annotations

from django.urls import path

from dashboards import challenger_pages, job_pages, model_pages, rule_pages, team_page, views, webhook_pages
from dashboards.entity_pages import card, merchant, search_page
from dashboards.export import export_cases, export_transactions
from dashboards.feed import feed_rows

app_name = "dashboards"
urlpatterns = [
    path("", views.live, name="live"),
    path("feed/", feed_rows, name="feed"),
    path("cases/", views.queue, name="queue"),
    # Ids may hold a "/" (scoring/schemas.py refuses only control characters): path, not str.
    path("cards/<path:card_id>/", card, name="card"),
    path("merchants/<path:merchant_id>/", merchant, name="merchant"),
    path("search", search_page, name="search"),
    path("cases/top/", views.open_cases_panel, name="open_cases"),
    path("cases/export/cases.csv", export_cases, name="export_cases"),
    path("cases/export/transactions.csv", export_transactions, name="export_transactions"),
    path("cases/<int:case_id>/", views.case_detail, name="case"),
    path("cases/<int:case_id>/row", views.case_row, name="case_row"),
    path("cases/<int:case_id>/claim", views.claim, name="claim"),
    path("cases/<int:case_id>/release", views.release, name="release"),
    path("cases/<int:case_id>/resolve", views.resolve, name="resolve"),
    path("cases/<int:case_id>/reopen", views.reopen, name="reopen"),
    path("cases/<int:case_id>/notes", views.add_note, name="note"),
    path("lists/entries", views.add_list_entry, name="list_entry"),
    path("team/", team_page.team_page, name="team"),
    path("jobs/", job_pages.jobs_page, name="jobs"),
    path("jobs/list", job_pages.job_list, name="job_list"),
    path("jobs/retrain", job_pages.start_retrain, name="job_retrain"),
    path("jobs/import", job_pages.start_import, name="job_import"),
    path("jobs/cancel", job_pages.cancel_job, name="job_cancel"),
    path("webhooks/", webhook_pages.endpoints, name="webhooks"),
    path("webhooks/<int:endpoint_id>/", webhook_pages.delivery_log, name="webhook"),
    path("webhooks/<int:endpoint_id>/enable", webhook_pages.enable, name="webhook_enable"),
    path("webhooks/<int:endpoint_id>/disable", webhook_pages.disable, name="webhook_disable"),
    path("webhooks/deliveries/<int:delivery_id>/replay", webhook_pages.replay, name="webhook_replay"),
    path("models/", model_pages.models_page, name="models"),
    path("models/<str:version>/thresholds/", model_pages.thresholds_page, name="thresholds"),
    path("models/<str:version>/thresholds/preview", model_pages.thresholds_preview, name="thresholds_preview"),
    path("models/<str:version>/thresholds/set", model_pages.thresholds_set, name="thresholds_set"),
    path("rules/", rule_pages.rules_page, name="rules"),
    path("rules/new", rule_pages.rule_new, name="rule_new"),
    path("rules/backtest", rule_pages.rule_try, name="rule_try"),
    path("rules/<str:ref>/", rule_pages.rule_page, name="rule"),  # by name (what the case page shows) or id
    path("rules/<int:rule_id>/backtest", rule_pages.rule_backtest, name="rule_backtest"),
    path("rules/<int:rule_id>/publish", rule_pages.rule_publish, name="rule_publish"),
    path("rules/<int:rule_id>/disable", rule_pages.rule_disable, name="rule_disable"),
    path("rules/<str:ref>/edit", rule_pages.rule_edit, name="rule_edit"),
    path("models/challenger/", challenger_pages.challenger_page, name="challenger"),
    path("models/challenger/promote", challenger_pages.promote, name="challenger_promote"),
    path("models/challenger/end", challenger_pages.end, name="challenger_end"),
    path("models/<str:version>/challenger", challenger_pages.mark, name="challenger_mark"),
]
