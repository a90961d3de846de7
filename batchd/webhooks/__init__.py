"""Signed webhook deliveries (Standard Webhooks), their schedule and URL safety."""

from batchd.webhooks.endpoint import WebhookEndpoint

__all__ = ["WebhookEndpoint"]
