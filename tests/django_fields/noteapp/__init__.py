"""A Django app with encrypted fields, for the tests of asherah_core.integrations.django."""
