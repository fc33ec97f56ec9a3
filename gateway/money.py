"""Money as integer nano-USD.

Every amount inside the gateway is an ``int`` count of nano-dollars (1e-9 USD). Floats never
carry money: a JSON number reaches us as ``Decimal`` (admin bodies are parsed with
``parse_float=Decimal``) or ``int``, and anything else is refused.

Rounding rule (the only one): the cost of a call is computed exactly as a rational
number ``sum(tokens_k * price_k_per_1M) / 1_000_000`` in nano-USD and rounded **up** once, to
the next whole nano-dollar. Rounding up means the operator never sells below list price; the
error is below one nano-dollar per call.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from gateway.errors import Unprocessable

NANOS_PER_USD = 1_000_000_000
# Anything larger than this in one operation is a typo, not a top-up.
MAX_AMOUNT_USD = Decimal("1000000")
MAX_AMOUNT = int(MAX_AMOUNT_USD) * NANOS_PER_USD


class MoneyError(ValueError):
    """An amount that cannot be money: not a number, NaN, infinite, too precise or absurd."""


def parse_usd(value: object, *, allow_negative: bool = False, allow_zero: bool = False) -> int:
    """A USD amount given as a decimal string, int or Decimal -> nano-USD.

    Floats are refused: by the time a float exists its decimal value is already lost.
    """
    if isinstance(value, bool) or value is None:
        raise MoneyError("amount must be a decimal string or number")
    if isinstance(value, float):
        raise MoneyError("amount must not be a binary float; send a decimal string")
    if isinstance(value, int):
        dec = Decimal(value)
    elif isinstance(value, Decimal):
        dec = value
    elif isinstance(value, str):
        try:
            dec = Decimal(value.strip())
        except InvalidOperation as exc:
            raise MoneyError(f"not a decimal amount: {value!r}") from exc
    else:
        raise MoneyError("amount must be a decimal string or number")
    if not dec.is_finite():
        raise MoneyError("amount must be finite")
    if abs(dec) > MAX_AMOUNT_USD:
        raise MoneyError(f"amount is beyond the limit of {MAX_AMOUNT_USD} USD")
    nanos = dec * NANOS_PER_USD
    if nanos != nanos.to_integral_value():
        raise MoneyError("amount has more than 9 decimal places")
    result = int(nanos)
    if result < 0 and not allow_negative:
        raise MoneyError("amount must not be negative")
    if result == 0 and not allow_zero:
        raise MoneyError("amount must not be zero")
    return result


def parse_amount(value: object, *, param: str = "amount", allow_zero: bool = False) -> int:
    """A positive USD amount from an API body or CLI flag -> nano-USD.

    Raises ``Unprocessable`` (422, code ``invalid_amount``) naming ``param`` otherwise.
    """
    try:
        return parse_usd(value, allow_zero=allow_zero)
    except MoneyError as exc:
        raise Unprocessable(f"{param}: {exc}", param=param, code="invalid_amount") from exc


def format_usd(nanos: int) -> str:
    """nano-USD -> decimal string with at least 2 and at most 9 decimals ("10.00", "0.000125")."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_USD)
    digits = f"{frac:09d}".rstrip("0")
    if len(digits) < 2:
        digits = digits.ljust(2, "0")
    return f"{sign}{whole}.{digits}"


def parse_price(value: object) -> int:
    """A price in USD per 1M tokens (string in models.yaml) -> nano-USD per 1M tokens."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        # YAML turns an unquoted 2.50 into a float; it is refused so prices stay exact.
        raise MoneyError('price must be a quoted decimal string, e.g. "2.50"')
    return parse_usd(value, allow_zero=True)


def ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
