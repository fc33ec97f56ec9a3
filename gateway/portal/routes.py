"""The portal's routes under /portal (registered by gateway/app.py), and the default Stripe
return URLs leading to its pages."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from gateway.portal import billing, key_pages, overview, signin, usage


def routes() -> list[BaseRoute]:
    return [
        Route("/portal", overview.overview, methods=["GET"]),
        Route("/portal/quickstart", overview.quickstart, methods=["GET"]),
        Route("/portal/signup", signin.signup_form, methods=["GET"]),
        Route("/portal/signup", signin.signup, methods=["POST"]),
        Route("/portal/login", signin.login_form, methods=["GET"]),
        Route("/portal/login", signin.login, methods=["POST"]),
        Route("/portal/logout", signin.logout, methods=["POST"]),
        Route("/portal/set-password", signin.set_password_form, methods=["GET"]),
        Route("/portal/set-password", signin.set_password, methods=["POST"]),
        Route("/portal/account", signin.account, methods=["GET"]),
        Route("/portal/account/password", signin.change_password, methods=["POST"]),
        Route("/portal/keys", key_pages.key_list, methods=["GET"]),
        Route("/portal/keys", key_pages.create, methods=["POST"]),
        Route("/portal/keys/{key_id}", key_pages.detail, methods=["GET"]),
        Route("/portal/keys/{key_id}", key_pages.update, methods=["POST"]),
        Route("/portal/keys/{key_id}/revoke", key_pages.revoke, methods=["POST"]),
        Route("/portal/usage", usage.usage, methods=["GET"]),
        Route("/portal/usage.csv", usage.usage_csv, methods=["GET"]),
        Route("/portal/billing", billing.billing_page, methods=["GET"]),
        Route("/portal/billing/checkout", billing.checkout, methods=["POST"]),
        Route("/portal/billing/auto-topup", billing.auto_topup, methods=["POST"]),
        Route("/portal/billing/success", billing.returned, methods=["GET"]),
        Route("/portal/billing/cancelled", billing.returned, methods=["GET"]),
        Route("/billing/success", billing.stripe_return, methods=["GET"]),
        Route("/billing/cancelled", billing.stripe_return, methods=["GET"]),
    ]
