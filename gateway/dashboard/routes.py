"""The dashboard's routes, all under /dashboard (every page needs the operator's session;
every POST its CSRF token)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from gateway.dashboard import operations, overview, signin, users


def routes() -> list[BaseRoute]:
    return [
        Route("/dashboard/login", signin.login_form, methods=["GET"]),
        Route("/dashboard/login", signin.login, methods=["POST"]),
        Route("/dashboard/logout", signin.logout, methods=["POST"]),
        Route("/dashboard", overview.overview, methods=["GET"]),
        Route("/dashboard/users", users.users, methods=["GET"]),
        Route("/dashboard/users/{user_id}", users.user, methods=["GET"]),
        Route("/dashboard/users/{user_id}/credits", users.add_credit, methods=["POST"]),
        Route("/dashboard/users/{user_id}/balance", users.set_balance, methods=["POST"]),
        Route("/dashboard/users/{user_id}/status", users.set_status, methods=["POST"]),
        Route("/dashboard/users/{user_id}/limits", users.set_limits, methods=["POST"]),
        Route(
            "/dashboard/users/{user_id}/keys/{key_id}/revoke", users.revoke_key, methods=["POST"]
        ),
        Route("/dashboard/users/{user_id}/login-link", users.login_link, methods=["POST"]),
        Route("/dashboard/audit", operations.audit, methods=["GET"]),
        Route("/dashboard/payments", operations.payments, methods=["GET"]),
        Route("/dashboard/payments/{event_id}/replay", operations.replay, methods=["POST"]),
        Route("/dashboard/prices", operations.prices, methods=["GET"]),
        Route("/dashboard/prices/reload", operations.reload_prices, methods=["POST"]),
    ]
