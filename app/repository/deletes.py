"""Deleting rows a chunk at a time, each chunk its own short transaction
(app/chunks.py drives them): pruning calls, erasing a tenant."""
from ..db import database


class KeysetDelete:
    """Deletes the rows of `model` matching `where`, in the order of the
    indexed column `order`, up to `rows` at a time (`chunk`).

    Each chunk reads on from the largest `order` value the previous one
    deleted (a keyset), so it starts where that one ended instead of
    walking past the index entries of rows just deleted, which PostgreSQL
    keeps until vacuum: the whole loop then costs one pass over the index.
    One statement a chunk, `DELETE ... WHERE id IN (SELECT id ... ORDER BY
    order LIMIT rows) RETURNING order`; rows sharing the last value are
    deleted by the next chunk (>=).
    """

    def __init__(self, model, where, order):
        self.model, self.where, self.order = model, where, order
        self.after = None

    def chunk(self, rows):
        """Delete up to `rows` rows in one transaction; return how many."""
        where = self.where if self.after is None else self.where & (self.order >= self.after)
        ids = self.model.select(self.model.id).where(where).order_by(self.order).limit(rows)
        with database.atomic():
            deleted = list(self.model.delete().where(self.model.id.in_(ids))
                           .returning(self.order).tuples().execute())
        if deleted:
            self.after = max(self.order.python_value(value) for (value,) in deleted)
        return len(deleted)
