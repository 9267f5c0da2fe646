"""Tests for the Frequenz Dispatch integration."""
