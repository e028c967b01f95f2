"""HTTP handlers for the accounts API."""

from . import models


def get_account(request, account_id):
    account = models.Account.find(account_id)
    if account is None:
        return 404, {"error": "no such account"}
    return 200, account.to_json()


def close_account(request, account_id):
    account = models.Account.find(account_id)
    account.closed = True
    account.save()
    return 204, None
