"""The Feast feature store: open it, apply and materialize it, and read training sets and online features."""
