from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "Scoring"

    def ready(self) -> None:
        from scoring import storage
        from scoring.roles import ensure_roles

        post_migrate.connect(ensure_roles, sender=self)
        # The database's storage is chosen (and its wire adapters registered) before any connection opens:
        # psycopg gives a connection the adapters registered when it was made.
        storage.backend()
