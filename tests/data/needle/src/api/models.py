"""Account records."""


class Account:
    table = "accounts"

    def __init__(self, account_id, owner, closed=False):
        self.account_id = account_id
        self.owner = owner
        self.closed = closed

    @classmethod
    def find(cls, account_id):
        return None

    def save(self):
        pass

    def to_json(self):
        return {"id": self.account_id, "owner": self.owner, "closed": self.closed}
