"""The test suites; tests/ mirrors the packages."""
