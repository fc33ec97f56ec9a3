"""The dashboard's routes, all under /dashboard (every page needs the operator's session;
every POST its CSRF token)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from gateway.dashboard import audit, overview, payments, prices, signin, users


def routes() -> list[BaseRoute]:
    return [
        Route("/dashboard/login", signin.login_form, methods=["GET"]),
        Route("/dashboard/login", signin.login, methods=["POST"]),
        Route("/dashboard/logout", signin.logout, methods=["POST"]),
        Route("/dashboard/logout-everywhere", signin.logout_everywhere, methods=["POST"]),
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
        Route("/dashboard/audit", audit.audit, methods=["GET"]),
        Route("/dashboard/payments", payments.payments, methods=["GET"]),
        Route("/dashboard/payments/{event_id}/replay", payments.replay, methods=["POST"]),
        Route("/dashboard/prices", prices.prices, methods=["GET"]),
        Route("/dashboard/prices/reload", prices.reload_prices, methods=["POST"]),
    ]
