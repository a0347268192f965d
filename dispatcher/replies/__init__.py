"""What volunteers send back: parsing replies and acting on inbound messages."""
