"""Notifications: subscriptions, a persisted outbox, and delivery by webhook, e-mail and syslog/CEF.

- :mod:`~stormwatch.notify.subscriptions`: ``add(store, sub) -> id``, ``list_all``, ``get``, ``remove``;
- :mod:`~stormwatch.notify.facts`: what is worth notifying (level changes, surges, newly exploited
  bulletins, new campaigns), each with a stable key;
- :mod:`~stormwatch.notify.dispatch`: ``notify_changes`` (match, de-duplicate, rate-limit, queue)
  and ``deliver_pending`` (send, retry with back-off, never lose);
- :mod:`~stormwatch.notify.webhook`, :mod:`~stormwatch.notify.mail`, :mod:`~stormwatch.notify.syslog`
  (with :mod:`~stormwatch.notify.cef`): the channels.

docs/notifications.md is the operator's guide.
"""

from stormwatch.notify.dispatch import DeliveryReport, DispatchReport, RetryPolicy, deliver_pending, notify_changes
from stormwatch.notify.model import DeliveryError, Fact, Message, NotifyError, Subscription

__all__ = [
    "DeliveryError",
    "DeliveryReport",
    "DispatchReport",
    "Fact",
    "Message",
    "NotifyError",
    "RetryPolicy",
    "Subscription",
    "deliver_pending",
    "notify_changes",
]
