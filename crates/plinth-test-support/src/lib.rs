//! plinth-test-support
