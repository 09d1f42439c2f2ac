"""Models with encrypted fields."""

from __future__ import annotations

from django.db import models

from asherah_core.integrations.django import EncryptedBinaryField, EncryptedTextField


class Note(models.Model):
    tenant = models.CharField(max_length=64, null=True)
    title = models.CharField(max_length=100, default="")
    body = EncryptedTextField(partition_from="tenant", null=True, blank=True)
    scan = EncryptedBinaryField(partition_from="tenant", null=True)

    class Meta:
        app_label = "noteapp"
