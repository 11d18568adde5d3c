"""The radar nowcasting domain: radar sequences, the U-Net, training, forecasters, verification."""
