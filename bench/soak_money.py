"""The soak's money moves besides calls: Stripe webhooks (signed as Stripe signs them, delivered
several times, concurrently, under two event types, delayed, and retried like Stripe retries
anything not answered 200) and admin credits (single and bulk), each remembered with what it
must have done to the ledger."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import stripe
from soak_stack import ADMIN_KEY, WEBHOOK_SECRET, Gateway

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Payment:
    session: str
    user: str
    cents: int
    credit: bool  # the payment succeeded: exactly one topup of cents must exist


@dataclass
class Credit:
    reason: str  # unique per credit: how its ledger entry is found
    user: str
    nanos: int
    outcome: str = "unknown"  # applied | refused (answered 4xx: nothing may exist) | unknown
    status: int = 0  # the HTTP answer's status; 0: none came


def _event(event_id: str, kind: str, payment: Payment, paid: str) -> dict[str, Any]:
    session = {
        "id": payment.session,
        "object": "checkout.session",
        "mode": "payment",
        "client_reference_id": payment.user,
        "amount_subtotal": payment.cents,
        "amount_total": payment.cents,
        "currency": "usd",
        "payment_status": paid,
        "payment_intent": f"pi_{payment.session}",
        "metadata": {},
    }
    return {
        "id": event_id,
        "object": "event",
        "type": kind,
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": session},
    }


class Money:
    def __init__(
        self,
        client: httpx.AsyncClient,
        gateways: Sequence[Gateway],
        users: Sequence[str],
        *,
        seed: int,
        payments_per_s: float,
        credits_per_s: float,
    ) -> None:
        self.client, self.gateways, self.users = client, gateways, users
        self.rng = random.Random(seed)
        self.payments_per_s, self.credits_per_s = payments_per_s, credits_per_s
        self.payments: list[Payment] = []
        self.credits: list[Credit] = []
        self.deliveries = self.duplicates = self.retried = 0
        self.credit_retries = self.credit_duplicates = 0  # admin credits sent again, and how
        # many of the answers that settled one said it had already applied
        self._undelivered: list[dict[str, Any]] = []  # events not yet answered 200
        self._delivered: list[dict[str, Any]] = []  # events answered 200, for replays
        self._tasks: set[asyncio.Task[None]] = set()

    # -- Stripe ---------------------------------------------------------------------------

    async def deliver(self, event: dict[str, Any]) -> bool:
        """One delivery to a random gateway, signed now; True when answered 200."""
        payload = orjson.dumps(event).decode()
        signature = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET)
        gw = self.rng.choice(self.gateways)
        self.deliveries += 1
        try:
            answer = await self.client.post(
                f"{gw.base}/webhooks/stripe",
                content=payload,
                headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
                timeout=20,
            )
        except httpx.HTTPError:
            answer = None
        if answer is None or answer.status_code != 200:
            self._undelivered.append(event)
            return False
        if answer.json().get("duplicate"):
            self.duplicates += 1
        self._delivered.append(event)
        return True

    async def _pay(self, n: int) -> None:
        rng = self.rng
        shape = rng.choices(("paid", "two-types", "delayed", "failed"), (5, 2, 2, 1))[0]
        payment = Payment(f"cs_soak_{n}", rng.choice(self.users), rng.randint(500, 3000),
                          credit=shape != "failed")  # fmt: skip
        self.payments.append(payment)
        if shape == "paid":
            ev = _event(f"evt_soak_{n}", "checkout.session.completed", payment, "paid")
            copies = rng.choice((1, 2, 3))  # the same event, delivered concurrently
            await asyncio.gather(*(self.deliver(ev) for _ in range(copies)))
        elif shape == "two-types":
            first = _event(f"evt_soak_{n}a", "checkout.session.completed", payment, "paid")
            second = _event(
                f"evt_soak_{n}b", "checkout.session.async_payment_succeeded", payment, "paid"
            )
            await asyncio.gather(self.deliver(first), self.deliver(second))
        else:
            await self.deliver(
                _event(f"evt_soak_{n}a", "checkout.session.completed", payment, "unpaid")
            )
            await asyncio.sleep(rng.uniform(0.5, 3))
            kind = "succeeded" if payment.credit else "failed"
            await self.deliver(
                _event(f"evt_soak_{n}b", f"checkout.session.async_payment_{kind}", payment, "paid")
            )

    async def _retry_and_replay(self) -> None:
        """Stripe's retries of what failed, and a replay of something already answered."""
        pending, self._undelivered = self._undelivered, []
        for ev in pending:
            self.retried += 1
            await self.deliver(ev)
        if self._delivered and self.rng.random() < 0.5:
            await self.deliver(self.rng.choice(self._delivered))

    async def settle_webhooks(self, within: float = 60) -> int:
        """Delivers every event until each was answered 200 (for at most ``within`` seconds);
        returns how many never were."""
        deadline = time.monotonic() + within
        while self._undelivered and time.monotonic() < deadline:
            await self._retry_and_replay()
            await asyncio.sleep(0.5)
        return len(self._undelivered)

    # -- admin credits --------------------------------------------------------------------

    async def _credit(self, n: int) -> None:
        # An idempotency reference (README, Admin API): a credit answered 5xx or not at all is
        # sent again with it, as an operator would, until one answer says it applied.
        if self.rng.random() < 0.2:
            users = self.rng.sample(list(self.users), min(3, len(self.users)))
            credits = [Credit(f"soak bulk {n}", u, 100_000_000) for u in users]
            self.credits += credits
            body = {
                "user_ids": users,
                "amount": "0.10",
                "reason": f"soak bulk {n}",
                "reference": f"soak-bulk-{n}",
            }
            answer = await self._until_answered(n, "/admin/credits/bulk", body, credits)
            if answer is not None and answer.status_code in (200, 201):
                results = {r["user_id"]: r for r in answer.json().get("data", [])}
                for c in credits:
                    status = results.get(c.user, {}).get("status")
                    c.outcome = "applied" if status == "applied" else "unknown"
            return
        credit = Credit(f"soak credit {n}", self.rng.choice(self.users), 250_000_000)
        self.credits.append(credit)
        body = {"amount": "0.25", "reason": credit.reason, "reference": f"soak-credit-{n}"}
        answer = await self._until_answered(
            n, f"/admin/users/{credit.user}/credits", body, [credit]
        )
        if answer is not None and answer.status_code in (200, 201):
            credit.outcome = "applied"
            self.credit_duplicates += bool(answer.json().get("duplicate"))

    async def _until_answered(
        self, n: int, path: str, body: dict[str, Any], credits: Sequence[Credit]
    ) -> httpx.Response | None:
        """Posts ``body`` (which carries a reference) to ``path`` until a gateway answers
        anything but a 5xx, at most 10 times; marks ``credits`` refused on a 4xx."""
        for attempt in range(10):
            gw = self.gateways[(n + attempt) % len(self.gateways)]
            try:
                answer = await self.client.post(
                    f"{gw.base}{path}", json=body, headers=ADMIN, timeout=20
                )
            except httpx.HTTPError:
                await asyncio.sleep(1.0)
                continue
            for c in credits:
                c.status = answer.status_code
            if answer.status_code < 500:
                self.credit_retries += attempt
                if answer.status_code >= 400:
                    for c in credits:
                        c.outcome = "refused"
                return answer
            await asyncio.sleep(1.0)
        return None

    # -- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        next_pay = next_credit = next_retry = time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_pay:
                n += 1
                self._spawn(self._pay(n))
                next_pay = now + self.rng.expovariate(self.payments_per_s)
            if now >= next_credit:
                n += 1
                self._spawn(self._credit(n))
                next_credit = now + self.rng.expovariate(self.credits_per_s)
            if now >= next_retry:
                self._spawn(self._retry_and_replay())
                next_retry = now + 2.0
            await asyncio.sleep(0.05)
        if self._tasks:
            await asyncio.wait(self._tasks)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
